//! The admin API (`/admin/v1`, its own port, `Authorization: Bearer <token>`): buckets, access
//! keys, storage nodes, partitions and health, as JSON. The operator drives the fleet through it.
//! `docs/admin-api.md` documents every call.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cairn_transport::server::{FleetAuth, check_signed, require_fleet_signature};
use serde::{Deserialize, Serialize};

use crate::bucket_config::ConfigError;
use crate::bucket_config::lifecycle::LifecycleConfiguration;
use crate::bucket_config::replication::ReplicationConfiguration;
use crate::data::nodes::NodeRegistry;
use crate::index::list::{ListEntry, VersionQuery};
use crate::index::records::{
    AccessKeyRecord, BucketRecord, LifecycleCounters, LifecycleRun, Quota, Versioning,
};
use crate::index::{BucketUsage, Index, IndexError, Stamp, now_ms};
use crate::metrics::GatewayMetrics;

/// What the admin handlers share.
pub struct AdminState {
    /// The index.
    pub index: Index,
    /// Storage nodes.
    pub nodes: NodeRegistry,
    /// Metrics (also served here).
    pub metrics: Arc<GatewayMetrics>,
    /// Refreshes scrape-time gauges.
    pub refresh_metrics: Arc<dyn Fn() + Send + Sync>,
    /// The bearer token.
    pub token: String,
    /// Owner recorded for buckets created here (the root access key).
    pub owner: String,
    /// Shards needed to accept a write.
    pub write_quorum: usize,
    /// Shards needed to read.
    pub read_quorum: usize,
    /// The fleet's storage classes (lifecycle transitions must name one of them).
    pub storage_classes: Arc<crate::storage_class::StorageClasses>,
    /// The S3 front end's cache of access keys (forgotten when a key changes here).
    pub keys: crate::s3::auth::AccessKeys,
    /// Checks requests signed with the admin token (the operator's).
    pub signed: FleetAuth,
}

/// An admin API error: `{"error": {"code", "message"}}`.
pub struct AdminError(StatusCode, &'static str, String);

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.1, "message": self.2}});
        (self.0, axum::Json(body)).into_response()
    }
}

impl From<IndexError> for AdminError {
    fn from(e: IndexError) -> Self {
        match e {
            IndexError::NoSuchBucket(_) => {
                AdminError(StatusCode::NOT_FOUND, "NoSuchBucket", e.to_string())
            }
            IndexError::BucketExists { .. } => {
                AdminError(StatusCode::CONFLICT, "BucketAlreadyExists", e.to_string())
            }
            IndexError::BucketNotEmpty(_) => {
                AdminError(StatusCode::CONFLICT, "BucketNotEmpty", e.to_string())
            }
            IndexError::DeletionAborted(_) => {
                AdminError(StatusCode::CONFLICT, "OperationAborted", e.to_string())
            }
            IndexError::VersioningIrreversible(_) => AdminError(
                StatusCode::CONFLICT,
                "VersioningIrreversible",
                e.to_string(),
            ),
            IndexError::ReplicationNeedsVersioning(_) => {
                AdminError(StatusCode::BAD_REQUEST, "InvalidRequest", e.to_string())
            }
            IndexError::ReplicationBlocksSuspend(_) => {
                AdminError(StatusCode::CONFLICT, "InvalidBucketState", e.to_string())
            }
            IndexError::Partition(_) => {
                AdminError(StatusCode::CONFLICT, "PartitionMapConflict", e.to_string())
            }
            IndexError::Engine(crate::index::engine::EngineError::Unavailable(_)) => AdminError(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                e.to_string(),
            ),
            other => AdminError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                other.to_string(),
            ),
        }
    }
}

impl From<ConfigError> for AdminError {
    fn from(e: ConfigError) -> Self {
        AdminError(StatusCode::BAD_REQUEST, e.code(), e.to_string())
    }
}

type AdminResult<T> = Result<axum::Json<T>, AdminError>;

/// The admin router; with `consensus`, also the internal endpoints of the replicated index,
/// which answer only requests signed with the fleet credential (`internal_auth`): the admin
/// token opens `/admin/v1` and nothing else.
pub fn router(
    state: Arc<AdminState>,
    consensus: Option<Arc<crate::consensus::Consensus>>,
    internal_auth: FleetAuth,
) -> Router {
    let internal = match consensus {
        Some(c) => crate::consensus::rpc::router(c).layer(middleware::from_fn_with_state(
            internal_auth,
            require_fleet_signature,
        )),
        None => Router::new(),
    };
    let api = Router::new()
        .route("/admin/v1/buckets", get(list_buckets).post(create_bucket))
        .route(
            "/admin/v1/buckets/{name}",
            get(bucket_info).delete(delete_bucket),
        )
        .route(
            "/admin/v1/buckets/{name}/versioning",
            get(get_versioning).put(put_versioning),
        )
        .route(
            "/admin/v1/buckets/{name}/lifecycle",
            get(get_lifecycle)
                .put(put_lifecycle)
                .delete(delete_lifecycle),
        )
        .route(
            "/admin/v1/buckets/{name}/lifecycle/status",
            get(lifecycle_status),
        )
        .route(
            "/admin/v1/buckets/{name}/quota",
            get(get_quota).put(put_quota).delete(delete_quota),
        )
        .route(
            "/admin/v1/buckets/{name}/storage-class",
            get(get_default_class)
                .put(put_default_class)
                .delete(delete_default_class),
        )
        .route("/admin/v1/storage-classes", get(storage_classes))
        .route(
            "/admin/v1/buckets/{name}/replication",
            get(get_replication)
                .put(put_replication)
                .delete(delete_replication),
        )
        .route("/admin/v1/keys", get(list_keys).post(create_key))
        .route("/admin/v1/keys/{id}", axum::routing::delete(delete_key))
        .route("/admin/v1/nodes", get(list_nodes))
        .route(
            "/admin/v1/nodes/{id}",
            axum::routing::put(register_node).delete(deregister_node),
        )
        .route("/admin/v1/partitions", get(partitions))
        .route("/admin/v1/partitions/{id}/split", post(split_partition))
        .route("/admin/v1/partitions/{id}/merge", post(merge_partition))
        .route("/admin/v1/index/retiring", axum::routing::put(put_retiring))
        .route("/admin/v1/index/digest", get(index_digest))
        .route("/admin/v1/health", get(health))
        .layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .merge(api)
        .merge(internal)
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

/// The admin API's door: a request signed with the admin token (`x-cairn-auth`, as the
/// operator sends them: neither forgeable nor replayable), or the token itself as a bearer
/// (convenient for people; anyone who sees one request can repeat it).
async fn require_token(State(state): State<Arc<AdminState>>, req: Request, next: Next) -> Response {
    if req
        .headers()
        .contains_key(cairn_transport::signing::AUTH_HEADER)
    {
        return match check_signed(&state.signed, req).await {
            Ok(req) => next.run(req).await,
            Err(refusal) => refusal,
        };
    }
    let ok = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| constant_time_eq(t.as_bytes(), state.token.as_bytes()));
    if ok {
        next.run(req).await
    } else {
        (state.signed.rejected)("bad_bearer");
        AdminError(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "missing or wrong bearer token".into(),
        )
        .into_response()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn metrics(State(state): State<Arc<AdminState>>) -> Response {
    (state.refresh_metrics)();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.encode(),
    )
        .into_response()
}

/// A bucket as the admin API shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct BucketInfo {
    /// Name.
    pub name: String,
    /// Creation time, Unix milliseconds.
    pub created_ms: i64,
    /// Owner (access key id of the creator).
    pub owner: String,
    /// Versioning state: `Off`, `Enabled` or `Suspended`.
    pub versioning: String,
    /// Current objects (only in single-bucket info).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objects: Option<u64>,
    /// Bytes of current objects (only in single-bucket info).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Noncurrent versions (only in single-bucket info).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noncurrent_versions: Option<u64>,
    /// Bytes of noncurrent versions (only in single-bucket info).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noncurrent_bytes: Option<u64>,
    /// Delete markers, current or not (only in single-bucket info).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete_markers: Option<u64>,
    /// Versions per storage class, with the bytes they take on disk (only in single-bucket info).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_classes: Option<std::collections::BTreeMap<String, ClassInfo>>,
    /// The bucket's quota, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
    /// The storage class of writes that name none, if not STANDARD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_storage_class: Option<String>,
}

/// What one storage class holds of a bucket.
#[derive(Debug, Serialize, Deserialize)]
pub struct ClassInfo {
    /// Versions (current and noncurrent).
    pub versions: u64,
    /// Object bytes.
    pub bytes: u64,
    /// Bytes stored: erasure-coded shards plus inline bytes kept in the index.
    pub stored_bytes: u64,
    /// `stored_bytes / bytes`: the class's storage overhead as measured.
    pub overhead: f64,
}

/// The admin API's name of a versioning state (the `Bucket` resource's vocabulary).
fn versioning_name(v: Versioning) -> &'static str {
    match v {
        Versioning::Unversioned => "Off",
        Versioning::Enabled => "Enabled",
        Versioning::Suspended => "Suspended",
    }
}

fn info(b: BucketRecord, usage: Option<BucketUsage>) -> BucketInfo {
    let u = usage.as_ref();
    BucketInfo {
        name: b.name,
        created_ms: b.created_ms,
        owner: b.owner,
        versioning: versioning_name(b.versioning).to_string(),
        quota: b.quota,
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

async fn list_buckets(State(state): State<Arc<AdminState>>) -> AdminResult<Vec<BucketInfo>> {
    let buckets = state.index.list_buckets().await?;
    Ok(axum::Json(
        buckets.into_iter().map(|b| info(b, None)).collect(),
    ))
}

/// Body of `POST /admin/v1/buckets`.
#[derive(Debug, Deserialize)]
pub struct CreateBucket {
    /// Bucket name (S3 naming rules).
    pub name: String,
    /// Succeed if the bucket already exists (adoption) instead of answering 409.
    #[serde(default)]
    pub exist_ok: bool,
}

async fn create_bucket(
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

async fn bucket_info(
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

async fn delete_bucket(
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
async fn empty_bucket(index: &Index, name: &str) -> Result<(), IndexError> {
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

/// Body of `PUT /admin/v1/buckets/{name}/versioning` (and its answer).
#[derive(Debug, Serialize, Deserialize)]
pub struct VersioningStatus {
    /// `Enabled` or `Suspended` (`Off` is accepted only while the bucket was never versioned).
    pub status: String,
}

/// Parses a JSON body into `T`, answering 400 `MalformedJSON` with serde's reason.
/// The bucket's record, or `NoSuchBucket`.
async fn bucket_record(state: &AdminState, name: String) -> Result<BucketRecord, AdminError> {
    Ok(state
        .index
        .get_bucket(&name)
        .await?
        .ok_or(IndexError::NoSuchBucket(name))?)
}

fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, AdminError> {
    serde_json::from_slice(body)
        .map_err(|e| AdminError(StatusCode::BAD_REQUEST, "MalformedJSON", e.to_string()))
}

/// Body of `/admin/v1/buckets/{name}/storage-class`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DefaultClass {
    /// The class of writes that name none (`null`: STANDARD).
    pub storage_class: Option<String>,
}

async fn get_default_class(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> AdminResult<DefaultClass> {
    let b = bucket_record(&state, name).await?;
    Ok(axum::Json(DefaultClass {
        storage_class: b.default_storage_class,
    }))
}

async fn put_default_class(
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

async fn delete_default_class(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<StatusCode, AdminError> {
    state.index.set_default_storage_class(&name, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_quota(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> AdminResult<Quota> {
    let b = bucket_record(&state, name).await?;
    Ok(axum::Json(b.quota.unwrap_or_default()))
}

async fn put_quota(
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
    state.index.set_quota(&name, Some(quota)).await?;
    Ok(axum::Json(quota))
}

async fn delete_quota(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<StatusCode, AdminError> {
    state.index.set_quota(&name, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_versioning(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> AdminResult<VersioningStatus> {
    let b = bucket_record(&state, name).await?;
    Ok(axum::Json(VersioningStatus {
        status: versioning_name(b.versioning).to_string(),
    }))
}

async fn put_versioning(
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

async fn put_lifecycle(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> AdminResult<LifecycleConfiguration> {
    let conf: LifecycleConfiguration = json_body(&body)?;
    let classes = state.storage_classes.clone();
    let conf = conf.validate(&|c| classes.contains(c), crate::s3::STANDARD)?;
    state.index.put_lifecycle(&name, &conf).await?;
    tracing::info!(bucket = %name, rules = conf.rules.len(), "lifecycle configuration set through the admin API");
    Ok(axum::Json(conf))
}

async fn get_lifecycle(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> AdminResult<LifecycleConfiguration> {
    match state.index.get_lifecycle(&name).await? {
        Some(c) => Ok(axum::Json(c)),
        None => Err(AdminError(
            StatusCode::NOT_FOUND,
            "NoSuchLifecycleConfiguration",
            format!("bucket {name} has no lifecycle configuration"),
        )),
    }
}

async fn delete_lifecycle(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<StatusCode, AdminError> {
    state.index.delete_lifecycle(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A lifecycle run as `GET .../lifecycle/status` shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct RunInfo {
    /// When it began (Unix ms).
    pub started_ms: i64,
    /// When it ended (absent while running).
    pub finished_ms: Option<i64>,
    /// `Current`, `Noncurrent` or `Uploads` while running.
    pub phase: Option<String>,
    /// What it did.
    pub counters: LifecycleCounters,
}

/// Reply of `GET /admin/v1/buckets/{name}/lifecycle/status`.
#[derive(Debug, Serialize, Deserialize)]
pub struct LifecycleStatus {
    /// The run under way (or interrupted, to be resumed).
    pub running: Option<RunInfo>,
    /// The last finished run.
    pub last: Option<RunInfo>,
    /// Totals over every finished run.
    pub totals: LifecycleCounters,
}

fn run_info(r: &LifecycleRun) -> RunInfo {
    RunInfo {
        started_ms: r.started_ms,
        finished_ms: r.finished_ms,
        phase: r.finished_ms.is_none().then(|| format!("{:?}", r.phase)),
        counters: r.counters,
    }
}

async fn lifecycle_status(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> AdminResult<LifecycleStatus> {
    let p = state.index.lifecycle_progress(&name).await?;
    Ok(axum::Json(LifecycleStatus {
        running: p.current.as_ref().map(run_info),
        last: p.last.as_ref().map(run_info),
        totals: p.totals,
    }))
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

async fn storage_classes(
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

async fn put_replication(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> AdminResult<ReplicationConfiguration> {
    let conf: ReplicationConfiguration = json_body(&body)?;
    let conf = conf.validate()?;
    state.index.put_replication(&name, &conf).await?;
    tracing::info!(bucket = %name, rules = conf.rules.len(), "replication configuration set through the admin API");
    Ok(axum::Json(conf.redacted()))
}

async fn get_replication(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> AdminResult<ReplicationConfiguration> {
    match state.index.get_replication(&name).await? {
        Some(c) => Ok(axum::Json(c.redacted())),
        None => Err(AdminError(
            StatusCode::NOT_FOUND,
            "ReplicationConfigurationNotFoundError",
            format!("bucket {name} has no replication configuration"),
        )),
    }
}

async fn delete_replication(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<StatusCode, AdminError> {
    state.index.delete_replication(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An access key as listed (no secret).
#[derive(Debug, Serialize, Deserialize)]
pub struct KeyInfo {
    /// Access key id.
    pub access_key_id: String,
    /// Name.
    pub name: String,
    /// Buckets it may use; absent = all.
    pub buckets: Option<Vec<String>>,
    /// Creation time, Unix milliseconds.
    pub created_ms: i64,
}

async fn list_keys(State(state): State<Arc<AdminState>>) -> AdminResult<Vec<KeyInfo>> {
    let keys = state.index.list_access_keys().await?;
    Ok(axum::Json(
        keys.into_iter()
            .map(|k| KeyInfo {
                access_key_id: k.access_key_id,
                name: k.name,
                buckets: k.buckets,
                created_ms: k.created_ms,
            })
            .collect(),
    ))
}

/// Body of `POST /admin/v1/keys`.
#[derive(Debug, Deserialize)]
pub struct CreateKey {
    /// Human-readable name.
    pub name: String,
    /// Buckets the key may use; absent = all.
    #[serde(default)]
    pub buckets: Option<Vec<String>>,
}

/// Reply of `POST /admin/v1/keys`: the only time the secret is shown.
#[derive(Debug, Serialize, Deserialize)]
pub struct CreatedKey {
    /// Access key id.
    pub access_key_id: String,
    /// Secret key.
    pub secret_key: String,
}

fn random_string(len: usize, alphabet: &[u8]) -> String {
    (0..len)
        .map(|_| alphabet[rand::random_range(0..alphabet.len())] as char)
        .collect()
}

/// A fresh key pair in the format AWS uses (`AK...` 20 chars, 40-char secret).
pub fn new_key_pair() -> (String, String) {
    let id = format!(
        "CK{}",
        random_string(18, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
    );
    let secret = random_string(
        40,
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
    );
    (id, secret)
}

async fn create_key(
    State(state): State<Arc<AdminState>>,
    axum::Json(req): axum::Json<CreateKey>,
) -> Result<(StatusCode, axum::Json<CreatedKey>), AdminError> {
    let (id, secret) = new_key_pair();
    state
        .index
        .put_access_key(AccessKeyRecord {
            access_key_id: id.clone(),
            secret_key: secret.clone(),
            name: req.name,
            buckets: req.buckets,
            created_ms: now_ms(),
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedKey {
            access_key_id: id,
            secret_key: secret,
        }),
    ))
}

async fn delete_key(
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, AdminError> {
    let deleted = state.index.delete_access_key(&id).await?;
    state.keys.forget(&id);
    if deleted {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AdminError(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            format!("no access key {id}"),
        ))
    }
}

async fn list_nodes(
    State(state): State<Arc<AdminState>>,
) -> AdminResult<Vec<crate::data::nodes::NodeReport>> {
    Ok(axum::Json(state.nodes.report()))
}

/// Body of `PUT /admin/v1/nodes/{id}`.
#[derive(Debug, Deserialize)]
pub struct RegisterNode {
    /// The node's zone.
    pub zone: String,
    /// Base URL of its API (`http://host:port`).
    pub endpoint: String,
}

/// Registers a storage node (or changes its zone or endpoint) in the index's registry: this
/// gateway writes to it at once, every other within a few seconds. 201 for a new node, 200
/// otherwise.
async fn register_node(
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
    axum::Json(req): axum::Json<RegisterNode>,
) -> Result<(StatusCode, axum::Json<crate::data::nodes::NodeReport>), AdminError> {
    let bad = |m: String| AdminError(StatusCode::BAD_REQUEST, "InvalidArgument", m);
    if req.zone.is_empty() {
        return Err(bad("a storage node needs a zone".into()));
    }
    let config = crate::data::nodes::parse_node(&format!("{id}@{}={}", req.zone, req.endpoint))
        .map_err(bad)?;
    let change = state
        .index
        .put_storage_node(crate::data::registration::record_of(&config))
        .await?;
    state.nodes.register(config.clone());
    let status = if change == crate::index::NodeRegistration::Added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let report = state
        .nodes
        .report()
        .into_iter()
        .find(|r| r.id == config.id.as_str())
        .expect("just registered");
    Ok((status, axum::Json(report)))
}

/// Removes a storage node from the index's registry: no gateway places new shards on it any
/// more (within a few seconds; a gateway whose `--node` flags list it keeps it until restarted
/// without it). Blobs on it are still read from the endpoint they recorded, so move or repair
/// its data before stopping it. 204, or 404 `NoSuchNode`.
async fn deregister_node(
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, AdminError> {
    if !state.index.delete_storage_node(&id).await? {
        return Err(AdminError(
            StatusCode::NOT_FOUND,
            "NoSuchNode",
            format!("storage node {id} is not registered"),
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Reply of `GET /admin/v1/partitions`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Partitions {
    /// The partition map.
    #[serde(flatten)]
    pub map: crate::index::partition::PartitionMap,
    /// This gateway's view of the Raft group that replicates the index (absent when the
    /// gateway keeps its index alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<crate::consensus::ReplicationStatus>,
    /// Each partition's measured load and size, as this gateway sees it (writes: the whole
    /// group's, counted as applied; reads: this gateway's, and on the leader every gateway's).
    #[serde(default)]
    pub load: Vec<PartitionLoad>,
}

/// One partition's load in `GET /admin/v1/partitions`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionLoad {
    /// Partition id.
    pub id: u64,
    /// Reads per second (decayed).
    pub reads_per_second: f64,
    /// Committed writes per second (decayed).
    pub writes_per_second: f64,
    /// Requests in the key sample a split key is chosen from.
    pub sampled_keys: usize,
    /// Approximate bytes on disk (flushed data only).
    pub approximate_bytes: u64,
    /// The Raft group serving the partition (its own once split off; absent on a gateway
    /// alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<u64>,
    /// The gateway leading that group (absent on a gateway alone, which serves every partition
    /// itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<u64>,
    /// The gateways voting in that group.
    #[serde(default)]
    pub replicas: Vec<u64>,
}

async fn partitions(State(state): State<Arc<AdminState>>) -> AdminResult<Partitions> {
    // The committed map, not a cached one, so a split through another gateway shows at once;
    // without a reachable leader, the map as last read (the replication status says why).
    let refresh = state.index.refresh_partition_map();
    let replication = state.index.consensus().map(|c| c.status());
    let map = match tokio::time::timeout(std::time::Duration::from_secs(1), refresh).await {
        Ok(Ok(map)) => map,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "partition map not refreshed");
            state.index.partition_map()
        }
        Err(_) => state.index.partition_map(),
    };
    // Each partition is served by the group owning its first key (its own, once split off).
    let groups: Vec<_> = replication
        .as_ref()
        .map(|r| r.groups.iter().chain(&r.remote_groups).cloned().collect())
        .unwrap_or_default();
    let served_by = |p: &crate::index::partition::Partition| {
        let consensus = state.index.consensus()?;
        let group = consensus
            .route(&p.start, &crate::index::keys::after(&p.start))
            .single()?;
        groups.iter().find(|g| g.group == group).cloned()
    };
    let load = state
        .index
        .partition_stats()
        .into_iter()
        .map(|s| {
            let group = map.get(s.id).and_then(&served_by);
            PartitionLoad {
                id: s.id.0,
                reads_per_second: s.reads_per_second,
                writes_per_second: s.writes_per_second,
                sampled_keys: s.sampled_keys,
                approximate_bytes: s.approximate_bytes,
                group: group.as_ref().map(|g| g.group),
                leader: group.as_ref().and_then(|g| g.leader),
                replicas: group.map(|g| g.voters).unwrap_or_default(),
            }
        })
        .collect();
    Ok(axum::Json(Partitions {
        map,
        replication,
        load,
    }))
}

/// Body of `POST /admin/v1/partitions/{id}/split`: the first object key of the right half.
#[derive(Debug, Serialize, Deserialize)]
pub struct SplitRequest {
    /// Bucket of the split key.
    pub bucket: String,
    /// Object key where the right half starts.
    pub key: String,
}

async fn split_partition(
    State(state): State<Arc<AdminState>>,
    Path(id): Path<u64>,
    axum::Json(req): axum::Json<SplitRequest>,
) -> AdminResult<crate::index::partition::PartitionMap> {
    let at = crate::index::keys::object(&req.bucket, &req.key);
    let change = state
        .index
        .split_partition(crate::index::partition::PartitionId(id), at)
        .await?;
    crate::rebalancer::record(&state.metrics, &change);
    Ok(axum::Json(state.index.partition_map()))
}

/// Which gateways to drain of their index votes before they are removed.
#[derive(Debug, serde::Deserialize)]
struct RetiringRequest {
    /// Gateway ids (`[]` cancels a drain).
    ids: std::collections::BTreeSet<u64>,
}

/// `PUT /admin/v1/index/retiring`: the listed gateways hand their votes and the leadership to
/// the others (the operator calls it, and waits for `voters` and `leader` to exclude them,
/// before it shrinks the gateway StatefulSet). Answers this gateway's replication status.
async fn put_retiring(
    State(state): State<Arc<AdminState>>,
    axum::Json(req): axum::Json<RetiringRequest>,
) -> AdminResult<crate::consensus::ReplicationStatus> {
    let Some(consensus) = state.index.consensus() else {
        return Err(AdminError(
            StatusCode::CONFLICT,
            "NotReplicated",
            "this gateway keeps its index alone (no --peer): there are no votes to move".into(),
        ));
    };
    match consensus.retire(req.ids).await {
        Ok(status) => Ok(axum::Json(status)),
        Err(e) => Err(AdminError(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            e.to_string(),
        )),
    }
}

/// `GET /admin/v1/index/digest`: this gateway's replica, partition by partition (entries and
/// MD5) at the applied index it reports; replicas at the same index must agree.
async fn index_digest(
    State(state): State<Arc<AdminState>>,
) -> AdminResult<crate::index::digest::ReplicaDigest> {
    let Some(consensus) = state.index.consensus() else {
        return Err(AdminError(
            StatusCode::CONFLICT,
            "NotReplicated",
            "this gateway keeps its index alone (no --peer): there is no replica to compare".into(),
        ));
    };
    let digest = crate::index::digest::replica_digest(consensus.clone()).await?;
    Ok(axum::Json(digest))
}

async fn merge_partition(
    State(state): State<Arc<AdminState>>,
    Path(id): Path<u64>,
) -> AdminResult<crate::index::partition::PartitionMap> {
    let change = state
        .index
        .merge_partitions(crate::index::partition::PartitionId(id))
        .await?;
    crate::rebalancer::record(&state.metrics, &change);
    Ok(axum::Json(state.index.partition_map()))
}

/// Reply of `GET /admin/v1/health`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Health {
    /// `ok` (every node up, no repair backlog), `degraded` (reads and writes work),
    /// `unavailable`.
    pub status: String,
    /// Storage nodes up.
    pub nodes_up: usize,
    /// Storage nodes configured.
    pub nodes_total: usize,
    /// Whether new writes can reach their quorum.
    pub writable: bool,
    /// Damaged shards the nodes' scrubbers found and have not repaired yet (a pass under way
    /// repairs as it goes; failed repairs wait for the next pass). Rolling a node now would
    /// take away one of the copies a repair needs.
    #[serde(default)]
    pub repair_backlog: u64,
    /// Shards the scrubbers found with fewer than k healthy siblings (lost stripes), in the
    /// last and current passes.
    #[serde(default)]
    pub unrepairable_shards: u64,
}

/// The repair backlog and the unrepairable shards in the nodes' scrub reports.
pub fn repair_backlog(reports: &[cairn_storage_node::scrubber::ScrubStatus]) -> (u64, u64) {
    let mut backlog = 0u64;
    let mut unrepairable = 0u64;
    for r in reports {
        if let Some(c) = &r.current {
            let found = c.corrupt_shards + c.broken_peer_shards;
            backlog += found.saturating_sub(c.repaired + c.unrepairable);
            unrepairable += c.unrepairable;
        }
        if let Some(l) = &r.last {
            // A pass under way retries what the last one failed to repair.
            if r.current.is_none() {
                backlog += l.repair_errors;
            }
            unrepairable += l.unrepairable;
        }
    }
    (backlog, unrepairable)
}

async fn health(State(state): State<Arc<AdminState>>) -> AdminResult<Health> {
    let total = state.nodes.len();
    let up = state.nodes.up_count();
    let writable = up >= state.write_quorum.min(total);
    let asks = state
        .nodes
        .up_clients()
        .into_iter()
        .map(|client| async move {
            tokio::time::timeout(std::time::Duration::from_secs(2), client.scrub_status())
                .await
                .ok()
                .and_then(Result::ok)
        });
    let reports: Vec<_> = futures_util::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect();
    let (repair_backlog, unrepairable_shards) = repair_backlog(&reports);
    let status = if up == total && repair_backlog == 0 {
        "ok"
    } else if writable && up >= state.read_quorum {
        "degraded"
    } else {
        "unavailable"
    };
    Ok(axum::Json(Health {
        status: status.into(),
        nodes_up: up,
        nodes_total: total,
        writable,
        repair_backlog,
        unrepairable_shards,
    }))
}

#[cfg(test)]
mod tests {
    use cairn_storage_node::scrubber::{PassStats, ScrubStatus};

    use super::repair_backlog;

    fn pass(corrupt: u64, broken: u64, repaired: u64, unrepairable: u64, errors: u64) -> PassStats {
        PassStats {
            corrupt_shards: corrupt,
            broken_peer_shards: broken,
            repaired,
            unrepairable,
            repair_errors: errors,
            ..Default::default()
        }
    }

    #[test]
    fn the_backlog_is_found_damage_not_yet_repaired() {
        assert_eq!(repair_backlog(&[]), (0, 0));
        let idle = ScrubStatus {
            current: None,
            last: Some(pass(3, 1, 3, 1, 0)),
            passes_completed: 1,
        };
        // Everything found was repaired or given up on: no backlog, one lost stripe's shard.
        assert_eq!(repair_backlog(std::slice::from_ref(&idle)), (0, 1));
        // A pass that found damage it has not repaired yet, and a node whose last pass failed
        // two repairs (waiting for the next pass).
        let busy = ScrubStatus {
            current: Some(pass(2, 2, 1, 0, 0)),
            last: Some(pass(0, 0, 0, 0, 5)),
            passes_completed: 4,
        };
        let failed = ScrubStatus {
            current: None,
            last: Some(pass(2, 0, 0, 0, 2)),
            passes_completed: 2,
        };
        assert_eq!(repair_backlog(&[idle, busy, failed]), (3 + 2, 1));
    }
}
